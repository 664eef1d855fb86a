//! Tensors in the JSON form of Triton's HTTP endpoint, and the JSON error body Triton gives every
//! failed HTTP request.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::emulator::examples::{join_bytes, split_bytes};
use crate::emulator::status::ServeError;
use crate::emulator::tensors::{OutputTensor, element_size};

/// Most bytes a rejection's plain-text reason is read for, to put it in the JSON body.
const REASON_LIMIT: usize = 4096;

/// Triton answers every HTTP failure with `{"error": "…"}`. The web framework answers some itself
/// (no route, a body over the limit, a wrong method) in plain text; this turns those into Triton's
/// form, keeping their status and reason.
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), REASON_LIMIT)
        .await
        .unwrap_or_default();
    let reason = String::from_utf8_lossy(&body).trim().to_string();
    let reason = if reason.is_empty() {
        match status {
            StatusCode::NOT_FOUND => "Not Found".to_string(),
            other => other.canonical_reason().unwrap_or("error").to_string(),
        }
    } else {
        reason
    };
    (status, axum::Json(json!({ "error": reason }))).into_response()
}

/// The answer to a path no route serves, as Triton gives it.
pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": "Not Found" })),
    )
        .into_response()
}

/// Flattens JSON tensor data (nested or flat, row-major) into little-endian bytes of `datatype`.
pub(crate) fn json_to_bytes(
    name: &str,
    datatype: &str,
    data: Option<&Value>,
) -> Result<Vec<u8>, ServeError> {
    fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            other => out.push(other),
        }
    }
    let mut flat = Vec::new();
    if let Some(data) = data {
        flatten(data, &mut flat);
    }
    if datatype == "BYTES" {
        // Strings travel as text in JSON; each becomes one length-prefixed element.
        let texts = flat
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    ServeError::invalid(format!(
                        "unable to parse '{v}' as BYTES for input '{name}': expected a string"
                    ))
                })
            })
            .collect::<Result<Vec<&str>, ServeError>>()?;
        return Ok(join_bytes(texts.iter().map(|t| t.as_bytes())));
    }
    let bad = |v: &Value| {
        ServeError::invalid(format!(
            "unable to parse '{v}' as {datatype} for input '{name}'"
        ))
    };
    let mut out = Vec::with_capacity(flat.len() * element_size(datatype).unwrap_or(1));
    for v in flat {
        let int = || v.as_i64().ok_or_else(|| bad(v));
        let uint = || v.as_u64().ok_or_else(|| bad(v));
        let float = || v.as_f64().ok_or_else(|| bad(v));
        match datatype {
            "BOOL" => out.push(u8::from(v.as_bool().ok_or_else(|| bad(v))?)),
            "INT8" => out.extend((int()? as i8).to_le_bytes()),
            "INT16" => out.extend((int()? as i16).to_le_bytes()),
            "INT32" => out.extend((int()? as i32).to_le_bytes()),
            "INT64" => out.extend(int()?.to_le_bytes()),
            "UINT8" => out.extend((uint()? as u8).to_le_bytes()),
            "UINT16" => out.extend((uint()? as u16).to_le_bytes()),
            "UINT32" => out.extend((uint()? as u32).to_le_bytes()),
            "UINT64" => out.extend(uint()?.to_le_bytes()),
            "FP32" => out.extend((float()? as f32).to_le_bytes()),
            "FP64" => out.extend(float()?.to_le_bytes()),
            other => {
                return Err(ServeError::invalid(format!(
                    "datatype '{other}' of input '{name}' is not supported in JSON form by the emulator"
                )));
            }
        }
    }
    Ok(out)
}

/// An output's bytes as a flat JSON list of numbers (of strings for BYTES).
pub(crate) fn bytes_to_json(o: &OutputTensor) -> Value {
    fn words<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        data.chunks_exact(N).map(|c| {
            let mut w = [0; N];
            w.copy_from_slice(c);
            w
        })
    }
    let d = &o.data;
    let values: Vec<Value> = match o.datatype.as_str() {
        "BOOL" => d.iter().map(|&b| json!(b != 0)).collect(),
        "INT8" => d.iter().map(|&b| json!(b as i8)).collect(),
        "UINT8" => d.iter().map(|&b| json!(b)).collect(),
        "INT16" => words::<2>(d)
            .map(|w| json!(i16::from_le_bytes(w)))
            .collect(),
        "UINT16" => words::<2>(d)
            .map(|w| json!(u16::from_le_bytes(w)))
            .collect(),
        "INT32" => words::<4>(d)
            .map(|w| json!(i32::from_le_bytes(w)))
            .collect(),
        "UINT32" => words::<4>(d)
            .map(|w| json!(u32::from_le_bytes(w)))
            .collect(),
        "FP32" => words::<4>(d)
            .map(|w| json!(f32::from_le_bytes(w)))
            .collect(),
        "INT64" => words::<8>(d)
            .map(|w| json!(i64::from_le_bytes(w)))
            .collect(),
        "UINT64" => words::<8>(d)
            .map(|w| json!(u64::from_le_bytes(w)))
            .collect(),
        "FP64" => words::<8>(d)
            .map(|w| json!(f64::from_le_bytes(w)))
            .collect(),
        "BYTES" => split_bytes(d)
            .unwrap_or_default()
            .into_iter()
            .map(|e| json!(String::from_utf8_lossy(e)))
            .collect(),
        _ => Vec::new(),
    };
    Value::Array(values)
}

/// The HTTP body codings Triton's endpoint speaks (`Content-Encoding`, `Accept-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    /// HTTP's "deflate": zlib-wrapped, as tritonclient writes it.
    Deflate,
}

impl Coding {
    fn parse(name: &str) -> Option<Coding> {
        match name.trim().to_ascii_lowercase().as_str() {
            "gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }

    /// The request body's coding: none, or one Triton supports.
    pub(crate) fn of_request(
        headers: &axum::http::HeaderMap,
    ) -> Result<Option<Coding>, ServeError> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(None);
        };
        let text = value.to_str().unwrap_or_default();
        if text.trim().eq_ignore_ascii_case("identity") {
            return Ok(None);
        }
        Coding::parse(text).map(Some).ok_or_else(|| {
            ServeError::invalid(format!(
                "unsupported Content-Encoding '{text}' (gzip, deflate)"
            ))
        })
    }

    /// The first coding the client accepts that Triton supports (quality values are not weighed).
    pub(crate) fn accepted(headers: &axum::http::HeaderMap) -> Option<Coding> {
        let value = headers.get(header::ACCEPT_ENCODING)?.to_str().ok()?;
        value
            .split(',')
            .filter_map(|part| part.split(';').next())
            .find_map(Coding::parse)
    }

    /// Decodes a request body, refusing one that would grow past `limit` bytes (a compressed bomb).
    pub(crate) fn decode(self, body: &[u8], limit: usize) -> Result<Vec<u8>, ServeError> {
        use std::io::Read;
        let reader: Box<dyn Read + '_> = match self {
            Coding::Gzip => Box::new(flate2::read::GzDecoder::new(body)),
            Coding::Deflate => Box::new(flate2::read::ZlibDecoder::new(body)),
        };
        let mut out = Vec::new();
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                ServeError::invalid(format!(
                    "failed to decompress the {} body: {e}",
                    self.name()
                ))
            })?;
        if out.len() > limit {
            return Err(ServeError::invalid(format!(
                "the {} body decompresses to more than {limit} bytes",
                self.name()
            )));
        }
        Ok(out)
    }

    pub(crate) fn encode(self, body: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let level = flate2::Compression::fast();
        // Writing to a Vec cannot fail, so neither can finishing.
        match self {
            Coding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
                let _ = e.write_all(body);
                e.finish().unwrap_or_default()
            }
            Coding::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
                let _ = e.write_all(body);
                e.finish().unwrap_or_default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_codings_round_trip_and_bombs_are_refused() {
        let body = vec![7u8; 100_000];
        for coding in [Coding::Gzip, Coding::Deflate] {
            let packed = coding.encode(&body);
            assert!(packed.len() < body.len() / 10);
            assert_eq!(coding.decode(&packed, body.len()).unwrap(), body);
            let err = coding.decode(&packed, 1000).unwrap_err();
            assert!(
                err.message.contains("more than 1000 bytes"),
                "{}",
                err.message
            );
        }
        assert!(Coding::Gzip.decode(b"not gzip", 10).is_err());
    }

    #[test]
    fn codings_are_read_from_the_headers() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(Coding::of_request(&h), Ok(None));
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(Coding::of_request(&h).is_err());
        h.insert(header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(Coding::of_request(&h), Ok(Some(Coding::Gzip)));
        h.insert(
            header::ACCEPT_ENCODING,
            "br, deflate;q=0.5, gzip".parse().unwrap(),
        );
        assert_eq!(Coding::accepted(&h), Some(Coding::Deflate));
    }
}
