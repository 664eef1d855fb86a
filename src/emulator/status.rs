//! Request failures in Triton's vocabulary, shared by the gRPC and HTTP front ends so both answer the
//! same mistake with the same code and wording.

use axum::http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    InvalidArgument,
    NotFound,
    Unavailable,
    ResourceExhausted,
    AlreadyExists,
    Internal,
    /// Triton's UNSUPPORTED: a feature the server or model does not offer (gRPC UNIMPLEMENTED).
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServeError {
    pub code: Code,
    pub message: String,
}

impl ServeError {
    pub(crate) fn invalid(message: impl Into<String>) -> ServeError {
        ServeError {
            code: Code::InvalidArgument,
            message: message.into(),
        }
    }

    /// Triton's wording for a model the repository does not have.
    pub(crate) fn unknown_model(model: &str) -> ServeError {
        ServeError {
            code: Code::NotFound,
            message: format!("Request for unknown model: '{model}' is not found"),
        }
    }

    /// Triton's wording for a model it knows but has not loaded (or an unknown version).
    pub(crate) fn unavailable_model(model: &str) -> ServeError {
        ServeError {
            code: Code::Unavailable,
            message: format!("Request for unknown model: '{model}' has no available versions"),
        }
    }

    /// HTTP codes as Triton's HTTP endpoint maps its error kinds (anything without its own code is 400).
    pub(crate) fn http_status(&self) -> StatusCode {
        match self.code {
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::ResourceExhausted | Code::AlreadyExists => StatusCode::BAD_REQUEST,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unsupported => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<ServeError> for tonic::Status {
    fn from(err: ServeError) -> tonic::Status {
        let code = match err.code {
            Code::InvalidArgument => tonic::Code::InvalidArgument,
            Code::NotFound => tonic::Code::NotFound,
            Code::Unavailable => tonic::Code::Unavailable,
            Code::ResourceExhausted => tonic::Code::ResourceExhausted,
            Code::AlreadyExists => tonic::Code::AlreadyExists,
            Code::Internal => tonic::Code::Internal,
            Code::Unsupported => tonic::Code::Unimplemented,
        };
        tonic::Status::new(code, err.message)
    }
}
