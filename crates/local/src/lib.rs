//! The on-device backend: GGUF models through llama-cpp-2.
