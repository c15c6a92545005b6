"""Data and exploration components shared by runners, controllers and learners.

``episode_buffer`` (EpisodeBatch, ReplayBuffer), ``transforms`` (OneHot),
``action_selectors`` (REGISTRY of action selectors), ``epsilon_schedules`` and
``standarize_stream`` (RunningMeanStd).
"""
