//! The assembled appliance: the real models and devices plugged into the pipeline's stage
//! traits, and what running as a system service needs.

pub mod devices;
pub mod doctor;
pub mod notify;
pub mod service;
pub mod stages;
