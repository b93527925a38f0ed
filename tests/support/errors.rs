//! What a chain printer makes of an error, for the tests of what errors print.

/// What anyhow's `{:#}` prints: the error and its sources joined with ": ".
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut next = err.source();
    while let Some(source) = next {
        parts.push(source.to_string());
        next = source.source();
    }
    parts.join(": ")
}

/// No piece of a chain printer's line is said twice.
pub fn assert_says_everything_once(line: &str) {
    let pieces: Vec<&str> = line.split(": ").collect();
    for (index, piece) in pieces.iter().enumerate() {
        assert!(!pieces[..index].contains(piece), "`{piece}` is repeated in: {line}");
    }
}
