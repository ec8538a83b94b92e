//! The backend conformance suite against the in-memory backend.

use session_store_core::MemoryBackend;
use session_store_testkit::conformance::Harness;

struct Memory(MemoryBackend);

impl Harness for Memory {
    type Backend = MemoryBackend;

    fn backend(&self) -> MemoryBackend {
        self.0.clone()
    }

    async fn finish(self) {}
}

#[allow(
    clippy::unused_async,
    reason = "backend_conformance! awaits the harness constructor; MongoDB's connects"
)]
async fn memory() -> Option<Memory> {
    Some(Memory(MemoryBackend::new()))
}

session_store_testkit::backend_conformance!(memory);
