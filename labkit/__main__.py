from labkit.cli.main import main

main()
