//! Hybrid store (placeholder while it is written).
