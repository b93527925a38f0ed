//! Load signals: how busy this process or its machine is, read cheaply and smoothed, so that
//! work can be shed or refused before the service falls over.
//!
//! A [`CpuSampler`] reads CPU time in the background: the cgroup's (`cpu.stat` against
//! `cpu.max`) when the process runs in a container, the machine's (`/proc/stat`) otherwise,
//! this process's alone with [`ProcessCpu`], or any [`CpuSource`] of your own. Past a
//! threshold it can shed low-priority work in a worker pool or hold a circuit breaker open.
//!
//! # Where things live
//!
//! | file | what it holds |
//! |---|---|
//! | `sampler.rs` | [`CpuSampler`]: the sampling task, the smoothing, the actions |
//! | `source.rs` | [`CpuSource`] and the readers of `/proc/stat`, `/proc/self/stat` and cgroup v2 |

mod sampler;
mod source;

pub use sampler::{CpuSampler, CpuSamplerBuilder};
pub use source::{CgroupV2, CpuReading, CpuSource, ProcStat, ProcessCpu};
