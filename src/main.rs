/// mimalloc instead of the system allocator: the writer thread of a bulk ingest spent about a
/// sixth of its time in glibc malloc/free (index rows, bind buffers, JSON trees).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    huimin::cli::run()
}
