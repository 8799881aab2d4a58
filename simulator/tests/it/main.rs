//! The integration tests of `simulator`, in one binary: one link for all of them.

mod common;

mod fleetmq_broker;
mod mosquitto;
