fn main() {
    std::process::exit(streamwarden::cli::main());
}
