//! Open-loop load: arrival processes, per-tenant drivers, input tensors.
//!
//! Every tenant of a run is driven from one process on one clock (see [`driver`]), which is what
//! lets several models be loaded side by side without the drivers starving each other.

pub mod arrival;
pub mod driver;
pub mod tensors;

pub use arrival::ArrivalProcess;
pub use driver::{ByteBudget, Clock, ClosedLoop, TenantShared, send_one};
