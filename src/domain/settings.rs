//! The global settings `registry.default` (R15) and `registry.whitelist` (R16).

use super::address::Address;
use super::error::{Error, Result};
use super::image::{ImageError, ImageRef};
use super::whitelist::Whitelist;

/// The global settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The registry for images without a registry part; `None` is Docker Hub.
    pub default_registry: Option<Address>,
    /// The registries images may come from; empty allows every registry.
    pub whitelist: Whitelist,
}

impl Settings {
    /// Parses `registry.default`: empty means Docker Hub (R15).
    pub fn parse_default_registry(input: &str) -> Result<Option<Address>> {
        if input.trim().is_empty() {
            return Ok(None);
        }
        let address = Address::parse(input)
            .map_err(|e| Error::invalid("settings.default_registry", e.to_string()))?;
        if address.is_docker_hub() {
            return Ok(None);
        }
        check_docker_reads_a_registry(&address)?;
        Ok(Some(address))
    }

    /// Parses `registry.whitelist` (R16).
    pub fn parse_whitelist(entries: &[String]) -> Result<Whitelist> {
        Whitelist::parse(entries).map_err(|e| Error::invalid("settings.whitelist", e.to_string()))
    }

    /// Returns the default registry as an address, Docker Hub when unset.
    pub fn default_address(&self) -> Address {
        self.default_registry
            .clone()
            .unwrap_or_else(Address::docker_hub)
    }
}

/// Refuses a default that Docker would not read as the registry in front of
/// an image: `reg/ubuntu` is `docker.io/reg/ubuntu` to Docker, so with `reg`
/// as the default every image without a registry would be refused (R15).
fn check_docker_reads_a_registry(address: &Address) -> Result<()> {
    let probe = ImageRef::parse("x").expect("\"x\" is a valid image reference");
    match probe.with_domain(address.as_str()) {
        Ok(_) => Ok(()),
        Err(ImageError::InvalidDomain { .. }) => Err(Error::invalid(
            "settings.default_registry",
            format!(
                "Docker reads {address:?} in front of an image as part of its path, not as a \
                 registry: give a host with a \".\" or a port, or localhost"
            ),
        )),
        Err(e) => Err(Error::invalid(
            "settings.default_registry",
            format!("{address:?} cannot stand in front of an image: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_default_is_docker_hub() {
        assert_eq!(Settings::parse_default_registry("").unwrap(), None);
        assert_eq!(Settings::parse_default_registry("docker.io").unwrap(), None);
        assert_eq!(
            Settings::default().default_address().as_str(),
            "index.docker.io"
        );
    }

    #[test]
    fn a_default_is_canonical() {
        let d = Settings::parse_default_registry("Reg.Example.com:5000").unwrap();
        assert_eq!(d.unwrap().as_str(), "reg.example.com:5000");
    }

    #[test]
    fn a_default_with_a_scheme_is_refused_naming_the_field() {
        let e = Settings::parse_default_registry("https://reg").unwrap_err();
        assert!(
            e.to_string().starts_with("settings.default_registry"),
            "{e}"
        );
    }

    #[test]
    fn a_default_docker_reads_as_part_of_the_image_path_is_refused() {
        // `localhost5` or `reg` were accepted, and every short image name then
        // failed to resolve: Docker takes `reg/ubuntu` for docker.io/reg/ubuntu.
        for input in ["reg", "localhost5", "Reg", "[::ffff:1.2.3.4]"] {
            let e = Settings::parse_default_registry(input).unwrap_err();
            assert!(
                e.to_string().starts_with("settings.default_registry"),
                "{input}: {e}"
            );
        }
        for input in [
            "reg:5000",
            "localhost",
            "reg.example.com",
            "[::1]",
            "10.0.0.1",
        ] {
            let d = Settings::parse_default_registry(input).unwrap();
            assert!(d.is_some(), "{input}");
        }
    }

    #[test]
    fn a_bad_whitelist_entry_is_refused_naming_the_field() {
        let e = Settings::parse_whitelist(&["http://x".into()]).unwrap_err();
        assert!(e.to_string().starts_with("settings.whitelist"), "{e}");
    }
}
