"""Infrastructure shared by the commands: config resolvers, atomic files and run dirs, experiment
tracking, secret scrubbing and allocator settings."""
