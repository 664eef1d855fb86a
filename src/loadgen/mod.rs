//! Open-loop load: arrival processes, per-tenant drivers, input tensors.
