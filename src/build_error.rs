//! The error every builder in millpond returns for a configuration it cannot run.

use std::fmt;

/// A configuration rejected by a builder's `build()`.
///
/// It names the offending field and the value it was given, so the message alone is enough to fix
/// the configuration.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use millpond::pool::{Manager, Pool};
/// # struct Noop;
/// # impl Manager for Noop {
/// #     type Resource = ();
/// #     type Error = std::io::Error;
/// #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
/// # }
/// let err = Pool::builder(Noop).max_size(4).min_idle(8).build().unwrap_err();
/// assert_eq!(err.field(), Some("min_idle"));
/// assert!(err.to_string().contains("min_idle"));
///
/// // Said of a section of a larger configuration, it names the whole path.
/// let err = err.nested_in("pool");
/// assert_eq!(err.field(), Some("min_idle"));
/// assert_eq!(err.path().as_deref(), Some("pool.min_idle"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    kind: Kind,
    /// Where the field sits, for a nested configuration: "backend `b`".
    context: Option<String>,
    /// The sections of a configuration that hold the field, outermost first: `["backends", "b"]`.
    sections: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Invalid { field: &'static str, value: String, reason: String },
    NoRuntime,
}

impl BuildError {
    pub(crate) fn invalid(
        field: &'static str,
        value: impl fmt::Debug,
        reason: impl Into<String>,
    ) -> Self {
        let kind = Kind::Invalid { field, value: format!("{value:?}"), reason: reason.into() };
        Self { kind, context: None, sections: Vec::new() }
    }

    pub(crate) fn no_runtime() -> Self {
        Self { kind: Kind::NoRuntime, context: None, sections: Vec::new() }
    }

    /// The same error, said of a part of a larger configuration ("backend `b`").
    pub(crate) fn within(mut self, context: String) -> Self {
        self.context = Some(context);
        self
    }

    /// The configuration field that was rejected, or `None` when the problem is the environment
    /// (no tokio runtime to run the pool's background work on).
    pub fn field(&self) -> Option<&'static str> {
        match &self.kind {
            Kind::Invalid { field, .. } => Some(field),
            Kind::NoRuntime => None,
        }
    }

    /// The full path of the rejected field in a configuration, its sections joined by dots
    /// (`backends.replica1.max_idle`): the same as [`field`](Self::field) until the error is
    /// [nested](Self::nested_in) in a section. `None` when no field was rejected.
    pub fn path(&self) -> Option<String> {
        let field = self.field()?;
        let mut path = String::new();
        for section in &self.sections {
            path.push_str(section);
            path.push('.');
        }
        path.push_str(field);
        Some(path)
    }

    /// The same error, said of the section `section` of a larger configuration: its
    /// [`path`](Self::path) gains `section` in front, and its message names the whole path.
    ///
    /// A cluster uses it to name the backend a pool's error comes from (`backends.b.max_size`);
    /// use it for the sections of your own configuration file, innermost first.
    #[must_use]
    pub fn nested_in(mut self, section: impl Into<String>) -> Self {
        self.sections.insert(0, section.into());
        self
    }

    /// Whether `build()` failed because it was not called inside a tokio runtime.
    pub fn is_no_runtime(&self) -> bool {
        matches!(self.kind, Kind::NoRuntime)
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(context) = &self.context {
            write!(f, "{context}: ")?;
        }
        match &self.kind {
            Kind::Invalid { field, value, reason } => {
                f.write_str("invalid `")?;
                for section in &self.sections {
                    write!(f, "{section}.")?;
                }
                write!(f, "{field}` ({value}): {reason}")
            }
            Kind::NoRuntime => f.write_str(
                "no tokio runtime: build() must be called from within a tokio runtime, \
                 which runs the pool's background work",
            ),
        }
    }
}

impl std::error::Error for BuildError {}
