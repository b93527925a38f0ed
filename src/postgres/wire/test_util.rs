//! Protocol messages as bytes, for the watcher's unit tests and loom models.

/// A typed message: its type byte, then its length (counting itself) and body.
pub(super) fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![kind];
    message.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(body);
    message
}

/// An untyped message (the client's first): its length (counting itself), a code, its body.
pub(super) fn untyped(code: u32, body: &[u8]) -> Vec<u8> {
    let mut message = (body.len() as u32 + 8).to_be_bytes().to_vec();
    message.extend_from_slice(&code.to_be_bytes());
    message.extend_from_slice(body);
    message
}

/// A protocol 3.0 startup message.
pub(super) fn startup() -> Vec<u8> {
    untyped(196_608, b"user\0postgres\0\0")
}
