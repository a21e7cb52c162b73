//! Sessions: ids, encrypted records, and the stores they live in.
