//! Print the machine's /proc texts: `cargo run -p kmem-allocator --example procdump -- zoneinfo`
fn main() {
    let m = kmem_allocator::Machine::boot(kmem_allocator::MachineConfig::default()).unwrap();
    for f in std::env::args().skip(1) {
        print!("{}", m.proc_file(&f).unwrap());
    }
}
