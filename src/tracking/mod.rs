//! Sessions that track themselves.
//!
//! May use: [`model`](crate::model), [`core`](crate::core) and
//! [`processors`](crate::processors).
