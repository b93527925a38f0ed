//! One line for an error and its sources, as the errors a call returns print their causes.

/// `err` and its `source()` chain joined with ": ", each message once.
///
/// Every error in millpond says only its own part and returns its cause from `source()`; a
/// manager's error may not, so a source whose text the line already holds (an error that prints
/// its cause and returns it too, so the line already ends with it) is skipped rather than
/// repeated.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        let text = source.to_string();
        // Only what a careless layer just printed at its end: a short cause ("timed out") may
        // well occur earlier in the line and still be news.
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = source.source();
    }
    line
}

#[cfg(all(test, not(millpond_loom)))]
mod tests {
    use std::fmt;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>, bool);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)?;
            match &self.1 {
                // A careless error that prints its cause and returns it too.
                Some(inner) if self.2 => write!(f, ": {inner}"),
                _ => Ok(()),
            }
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|inner| inner as _)
        }
    }

    #[test]
    fn joins_the_chain_and_skips_what_a_careless_layer_already_printed() {
        let root = Layer("connection refused", None, false);
        let tidy = Layer("creating failed", Some(Box::new(root)), false);
        assert_eq!(super::chain(&tidy), "creating failed: connection refused");
        let root = Layer("connection refused", None, false);
        let careless = Layer("creating failed", Some(Box::new(root)), true);
        assert_eq!(super::chain(&careless), "creating failed: connection refused");
    }
}
