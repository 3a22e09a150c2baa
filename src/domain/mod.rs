//! The pure model: rules R1–R17 as types, `decide` and the fold. Nothing here
//! performs I/O or awaits.

pub mod access;
pub mod address;
pub mod command;
pub mod credential;
pub mod decide;
pub mod error;
pub mod event;
pub mod image;
pub mod quota;
pub mod resolve;
pub mod settings;
pub mod state;
pub mod trust;
pub mod whitelist;
