//! Device signals: battery, charging, power saver, thermal state, available memory.
