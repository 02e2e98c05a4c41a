"""Agent tests run the real app module with in-memory tables and no broker."""
import os

os.environ["FLOWSIGHT_STORE"] = "memory://"
os.environ.setdefault("FLOWSIGHT_QUIET", "1")
