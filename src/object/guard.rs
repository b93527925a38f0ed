//! The guards that hand a pooled value to its user and give it back on drop.

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::api::ObjectPool;
use crate::sync::Arc;

/// Generates a guard type: the value plus a way to reach its pool, with `Deref`, `take` and the
/// return on drop. Both guards behave the same and differ only in how they hold the pool.
macro_rules! guard {
    ($(#[$doc:meta])* $name:ident<$($lt:lifetime,)? T>, $pool:ty) => {
        $(#[$doc])*
        #[must_use = "dropping the guard returns the value to the pool at once"]
        pub struct $name<$($lt,)? T: Send + 'static> {
            pool: $pool,
            /// `Some` until `take` or `drop` moves the value out.
            value: Option<Box<T>>,
            /// Whether the pool counts this value (it does not count values made past `max_total`).
            tracked: bool,
        }

        impl<$($lt,)? T: Send + 'static> $name<$($lt,)? T> {
            pub(super) fn new(pool: $pool, value: Box<T>, tracked: bool) -> Self {
                Self { pool, value: Some(value), tracked }
            }

            /// Keeps the value for good: it leaves the pool, which stops counting it.
            ///
            /// # Examples
            ///
            /// ```
            /// use millpond::object::ObjectPool;
            ///
            /// let pool = ObjectPool::builder(|| vec![0u8; 16]).build()?;
            /// let buffer: Vec<u8> = millpond::object::Object::take(pool.get());
            /// assert_eq!(pool.status().live, 0);
            /// # Ok::<(), millpond::BuildError>(())
            /// ```
            pub fn take(mut this: Self) -> T {
                this.pool.detach(this.tracked);
                *this.value.take().expect(PRESENT)
            }
        }

        impl<$($lt,)? T: Send + 'static> Deref for $name<$($lt,)? T> {
            type Target = T;

            #[inline]
            fn deref(&self) -> &T {
                self.value.as_ref().expect(PRESENT)
            }
        }

        impl<$($lt,)? T: Send + 'static> DerefMut for $name<$($lt,)? T> {
            #[inline]
            fn deref_mut(&mut self) -> &mut T {
                self.value.as_mut().expect(PRESENT)
            }
        }

        impl<$($lt,)? T: Send + 'static> Drop for $name<$($lt,)? T> {
            #[inline]
            fn drop(&mut self) {
                if let Some(value) = self.value.take() {
                    self.pool.recycle(value, self.tracked);
                }
            }
        }

        impl<$($lt,)? T: Send + fmt::Debug + 'static> fmt::Debug for $name<$($lt,)? T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.value).finish()
            }
        }
    };
}

/// The value is only moved out by `take` and `drop`, which consume the guard, so every other
/// access finds it.
const PRESENT: &str = "a guard holds its value until it is consumed";

guard! {
    /// A value checked out of an [`ObjectPool`] by [`get`](ObjectPool::get): dereferences to the
    /// value and returns it to the pool when dropped.
    Object<'a, T>, &'a ObjectPool<T>
}

guard! {
    /// A value checked out by [`get_owned`](ObjectPool::get_owned): like [`Object`], but it holds
    /// its own handle to the pool, so it is `'static`.
    OwnedObject<T>, Arc<ObjectPool<T>>
}
