"""Stages around RL (SFT, distillation, preference cold start, ...)."""
