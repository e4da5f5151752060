//! Plugins: finding and loading libraries, and the host services they are given.

pub mod bridge;
pub mod context;
pub mod copy_cache;
pub mod elf_check;
pub mod handover;
pub mod lifecycle;
pub mod loader;
pub mod logger;
pub mod permissions;
pub mod routes;
pub mod tasks;
pub mod version;
