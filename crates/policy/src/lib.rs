//! The routing policy: TOML rules with CEL conditions, validated with file:line errors; pure decisions.
