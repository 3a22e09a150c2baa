//! Replays the fuzz corpus (`fuzz/corpus/<target>/`, and `fuzz/artifacts/<target>/`
//! when a local fuzzing run left crashes there) through the checks the fuzz
//! targets run, so that every input once found keeps passing under `cargo test`.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use registrar::testing::fuzzing;

/// Runs `check` on every file of the target's corpus and artifacts, and fails
/// naming each input that panics.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files(&fuzz.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target} is missing or empty: the replay would check nothing"
    );
    let artifacts = files(&fuzz.join("artifacts").join(target));

    let mut failed = Vec::new();
    for path in corpus.iter().chain(&artifacts) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail (reproduce with `cargo +nightly fuzz run {target} <file>`):\n{}",
        failed.len(),
        corpus.len() + artifacts.len(),
        failed.join("\n")
    );
}

/// Lists the files of a directory, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a corpus directory entry is readable").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn image_corpus_passes() {
    replay("image", fuzzing::image);
}

#[test]
fn address_corpus_passes() {
    replay("address", fuzzing::address);
}

#[test]
fn event_corpus_passes() {
    replay("event", fuzzing::event);
}

#[test]
fn request_corpus_passes() {
    replay("request", fuzzing::request);
}
