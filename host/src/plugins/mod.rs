//! Plugins: finding and loading libraries, and the host services they are given.

pub mod bus_bridge;
pub mod context;
pub mod elf_check;
pub mod handover;
pub mod lifecycle;
pub mod loader;
pub mod logger;
pub mod mqtt_bridge;
pub mod permissions;
pub mod routes;
pub mod tasks;
pub mod version;
