//! Real servers for the integration tests: a throwaway PostgreSQL or Redis per test.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

pub mod outage;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
