//! Real servers for the integration tests: a throwaway PostgreSQL per test.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

pub mod postgres;
