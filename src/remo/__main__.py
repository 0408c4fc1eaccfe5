from remo.cli.main import main

main()
