//! Checking credentials against their registries (the Rancher page admits
//! "Rancher does not check if the credentials are still valid"): the login
//! a Docker client makes (`client`), and the background check of every
//! active registry (`schedule`). The use cases are in `app::verify`.

mod challenge;
mod client;
mod schedule;

pub use client::{Limits, Target, Verdict, Verifier};
pub use schedule::{spawn, ScheduleSettings};
