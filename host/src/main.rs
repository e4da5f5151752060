/// mimalloc rather than the system allocator: the eventbus paths allocate on one thread and
/// free on another (a plugin's thread and the host's), which glibc's malloc serves on its
/// slow path. See the README's dependency list and BENCHMARKS.md, "The allocator".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    brewblox_host::app::main()
}
