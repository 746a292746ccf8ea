//! The thin C layer: converts arguments, calls the core, maps errors. No protocol logic.
