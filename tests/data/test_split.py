from nwt.data.split import GAP, assign_splits, unseen_episode_ids


def test_blocks_are_contiguous_in_time_with_one_gap_between():
    labels = assign_splits(20, 0.1, 0.1)
    assert labels == ["train"] * 14 + [GAP] + ["val"] * 2 + [GAP] + ["test"] * 2


def test_every_episode_is_seen_in_training():
    for n in range(1, 30):
        labels = assign_splits(n, 0.1, 0.1)
        assert len(labels) == n
        assert labels.count("train") >= 1


def test_short_episodes_go_all_to_train():
    assert assign_splits(4, 0.2, 0.2) == ["train"] * 4


def test_unseen_takes_the_last_episodes_but_never_all():
    ids = ["a", "b", "c"]
    assert unseen_episode_ids(ids, 1) == ["c"]
    assert unseen_episode_ids(ids, 5) == ["b", "c"]
    assert unseen_episode_ids(ids, 0) == []
