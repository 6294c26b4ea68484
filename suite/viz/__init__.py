"""PNG figures people would rather look at than read: learning curves, mistakes, confusion."""
