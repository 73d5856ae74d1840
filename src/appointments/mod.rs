//! Providers' schedules and appointments.
pub mod availability;
