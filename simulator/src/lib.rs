//! The fleet simulator (work in progress: the model, transport and CLI land in the next commits).
