//! Runnable demos live in this package's examples.
