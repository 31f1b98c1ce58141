"""What only a developer or the demo runs: ``up`` (the main job), the signed-webhook simulator,
the demo onboardings, the local Graph emulator and the stand-in Facebook SDK. Nothing in
production imports this package."""
