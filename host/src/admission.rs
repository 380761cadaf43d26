//! What a message must be before the host even parses it: JSON by its content type, and no larger
//! than the largest request any endpoint of the server accepts. Anything else is unreadable: it is
//! rejected without requeue, and never answered (its reply address is inside the unread body).

use lapin::protocol::BasicProperties;

/// Why a message is refused unread, or `Ok` when it may be parsed.
pub fn admit(properties: &BasicProperties, body: &[u8], max_bytes: usize) -> Result<(), String> {
    if let Some(content_type) = properties.content_type() {
        let essence = content_type.as_str().split(';').next().unwrap_or("").trim();
        // kombu (and so oslo.messaging) sends application/json; a message without a content type
        // is given the benefit of the doubt and parsed.
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(format!(
                "content type {:?} is not application/json",
                content_type.as_str()
            ));
        }
    }
    if body.len() > max_bytes {
        return Err(format!(
            "the body is {} bytes, more than the {max_bytes} bytes any endpoint accepts",
            body.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::admit;
    use lapin::protocol::BasicProperties;
    use lapin::types::ShortString;

    fn typed(content_type: &str) -> BasicProperties {
        BasicProperties::default().with_content_type(ShortString::from(content_type))
    }

    #[test]
    fn json_within_the_limit_is_admitted() {
        assert!(admit(&typed("application/json"), b"{}", 2).is_ok());
        assert!(admit(&typed("application/json; charset=utf-8"), b"{}", 2).is_ok());
        assert!(admit(&BasicProperties::default(), b"{}", 2).is_ok());
    }

    #[test]
    fn other_content_types_and_big_bodies_are_refused() {
        let e = admit(&typed("application/x-python-serialize"), b"{}", 2).unwrap_err();
        assert!(e.contains("x-python-serialize"), "{e}");
        let e = admit(&typed("application/json"), b"{}  ", 3).unwrap_err();
        assert!(e.contains("4 bytes") && e.contains("3 bytes"), "{e}");
    }
}
