"""The fleet model, the publish planner and the paced publisher (SPEC §3, §4)."""
