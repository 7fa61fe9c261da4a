from sora.cli import main

main()
