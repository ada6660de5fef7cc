//! The backend side's bookkeeping that is not I/O: which idle keep-alive
//! connections each backend has (`pool`). The reactor owns the sockets.

pub mod pool;
