//! Client for Triton's gRPC protocol.
