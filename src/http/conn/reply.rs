//! The few answers the connection layer writes itself, on the raw socket, before or
//! instead of actix-http: the same shape as every other error of the API (SPEC's JSON
//! body, `X-Request-Id`, the security headers), always with `Connection: close`.

use actix_web::http::StatusCode;

use crate::error::ErrorBody;
use crate::http::middleware::{code_for, request_id_or_new, SECURITY_HEADERS};

/// A complete HTTP/1.1 error response as bytes.
#[derive(Debug, Clone)]
pub struct RawReply {
    pub status: u16,
    pub request_id: String,
    pub bytes: Vec<u8>,
}

impl RawReply {
    /// Builds `{"error": code, "message": message}` with status, the client's request id
    /// (when sane) or a new one, and `Retry-After` when given.
    pub fn new(
        status: u16,
        code: &str,
        message: &str,
        sent_request_id: Option<&str>,
        retry_after: Option<u32>,
    ) -> RawReply {
        let status_code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let code = if code.is_empty() {
            code_for(status_code)
        } else {
            code
        };
        let body = serde_json::to_vec(&ErrorBody {
            error: code,
            message: message.to_string(),
        })
        .unwrap_or_else(|_| b"{}".to_vec());
        let request_id = request_id_or_new(sent_request_id);
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nx-request-id: {}\r\n",
            status_code.as_u16(),
            status_code.canonical_reason().unwrap_or("Error"),
            body.len(),
            request_id,
        );
        for (name, value) in SECURITY_HEADERS {
            head.push_str(name.as_str());
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        if let Some(secs) = retry_after {
            head.push_str(&format!("retry-after: {secs}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        RawReply {
            status,
            request_id,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_reply_is_a_complete_response_with_the_spec_headers_and_json() {
        let r = RawReply::new(408, "request_timeout", "too slow", Some("abc-1"), None);
        let text = String::from_utf8(r.bytes.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nx-request-id: abc-1\r\n"));
        assert!(head.contains("\r\nx-frame-options: DENY"));
        assert!(head.contains("\r\nconnection: close\r\n"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "request_timeout");
        assert_eq!(json["message"], "too slow");
    }

    #[test]
    fn an_unsafe_request_id_is_replaced() {
        let r = RawReply::new(400, "", "bad", Some("a b\r\nx: y"), Some(1));
        assert_ne!(r.request_id, "a b\r\nx: y");
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(text.contains("\"error\":\"bad_request\""));
        assert!(text.contains("retry-after: 1\r\n"));
    }
}
