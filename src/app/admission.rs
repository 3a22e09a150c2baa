//! Admission decisions for Kubernetes environments: for each image of a
//! pod, what ResolvePull would answer (allowed or the deny reason) and the
//! fully qualified image (the default registry applied, R15). No secret is
//! opened: admission needs the decision, never the credential.

use super::{App, Result};
use crate::domain::event::Orchestration;
use crate::domain::image::ImageRef;
use crate::domain::resolve::{self, Decision, DenyReason, Target};

/// What admission decides of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageVerdict {
    /// The image as the pod names it.
    pub image: String,
    /// The image ResolvePull resolves it to; empty when it does not parse.
    pub resolved_image: String,
    /// Whether the image names its registry (then it is left as written).
    pub names_registry: bool,
    /// Why a pull of it would be refused, if it would be.
    pub refused: Option<String>,
}

/// The environment's verdicts, as of one revision.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The log position the verdicts reflect.
    pub revision: u64,
    /// One per image, in the order asked.
    pub verdicts: Vec<ImageVerdict>,
}

/// Why admission cannot judge for an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAdmissible {
    /// No such environment.
    Unknown,
    /// The environment is not of orchestration Kubernetes.
    NotKubernetes,
}

impl App {
    /// Judges `images` for `environment_id` as ResolvePull would, all
    /// against one view of the log.
    pub fn admit(
        &self,
        environment_id: &str,
        images: &[&str],
    ) -> Result<std::result::Result<Admission, NotAdmissible>> {
        let now = self.now();
        let state = self.projection.read();
        let Some(environment) = state.environment(environment_id) else {
            return Ok(Err(NotAdmissible::Unknown));
        };
        if environment.orchestration != Orchestration::Kubernetes {
            return Ok(Err(NotAdmissible::NotKubernetes));
        }
        let verdicts = images
            .iter()
            .map(|&image| {
                let names_registry = ImageRef::parse(image).is_ok_and(|i| i.domain_explicit());
                match resolve::resolve(&state, environment_id, Target::Image(image), now) {
                    Ok(r) => ImageVerdict {
                        image: image.to_owned(),
                        resolved_image: r.resolved_image,
                        names_registry,
                        refused: match r.decision {
                            Decision::Allowed(_) => None,
                            Decision::Denied(reason) => Some(message(reason)),
                        },
                    },
                    Err(e) => ImageVerdict {
                        image: image.to_owned(),
                        resolved_image: String::new(),
                        names_registry,
                        refused: Some(e.to_string()),
                    },
                }
            })
            .collect();
        Ok(Ok(Admission {
            revision: state.position(),
            verdicts,
        }))
    }
}

fn message(reason: DenyReason) -> String {
    reason.message().to_owned()
}
