//! The assembled appliance: the configured models loaded onto one device (`assemble`), the
//! real models and devices plugged into the pipeline's stage traits (`stages`, `devices`), the
//! service loop with systemd's notify protocol (`service`, `notify`) and its turn records on
//! stdout (`turn_log`), and `doctor`.

pub mod assemble;
pub mod devices;
pub mod doctor;
pub mod gate;
pub mod notify;
pub mod rauc;
pub mod selftest;
pub mod service;
pub mod stages;
pub mod turn_log;
