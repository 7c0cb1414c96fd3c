from connectors.docker.fake.engine import main

main()
