"""The sync and restore between Neon and RDS through S3: flow.py reads as the list of steps, and says where
each kind of change goes."""
