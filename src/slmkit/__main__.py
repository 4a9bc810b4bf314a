from slmkit.cli.main import main

main()
