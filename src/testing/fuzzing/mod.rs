//! Entry points shared by the fuzz targets in `fuzz/` and the corpus replay in
//! `tests/fuzz_corpus.rs`: each takes arbitrary bytes, drives one parser or
//! codec, and panics only when one of its invariants is broken.

mod address;
mod event;
mod image;
mod request;

pub use address::address;
pub use event::event;
pub use image::image;
pub use request::request;
