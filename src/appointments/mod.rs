//! Providers' schedules and appointments: the provider directory, weekly working hours in
//! the provider's time zone, time off, free slots, and appointments from booking to
//! completion, cancellation or no-show. Who may do what is `access::schedule`'s decision.
pub mod availability;
pub mod fhir;
pub mod graphql;
pub mod live;
pub mod loaders;
pub mod reads;
pub mod service;
pub mod types;
